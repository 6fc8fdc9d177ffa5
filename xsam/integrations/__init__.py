"""The SAM family inside other people's training frameworks. PyTorch Lightning:
:mod:`xsam.integrations.lightning` (a mixin for automatic optimization and a precision plugin
for fp16; it imports Lightning, an optional dependency: ``pip install 'xsam[lightning]'``).
HuggingFace accelerate needs no code of ours: the recipe is in docs/INTEGRATIONS.md."""
