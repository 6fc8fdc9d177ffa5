"""Paper tables from finished runs: collect, place in cells, render, plot.

``collect`` reads run directories and W&B into :class:`RunRecord`; ``table`` places them in the
cells of an :class:`~xsam.experiments.Experiment`; ``render``/``documents`` write CSV, Markdown
and LaTeX; ``paired`` compares two optimizers on matched seeds; ``plots`` draws curves.
"""
