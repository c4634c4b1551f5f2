"""Experiments that belong to one notebook each: the temperature analysis and grid (02), the
transfer-vs-distillation arms (03), the adversarial arms and the one-pass pitfall (04),
structure matching and lightweighting (05), and so on.

What may be imported here: ``core``, ``methods``, ``loop``, ``teachers``, ``profiles`` and other
``lessons`` modules. Nothing from ``viz`` or ``batch``, and no plotting or notebook package:
a lesson computes, ``viz`` draws. ``batch`` never imports a lesson.
"""
