"""Experiments that belong to one notebook each: the temperature analysis and grid (02), the
transfer-vs-distillation arms (03), the adversarial arms and the one-pass pitfall (04),
structure matching and lightweighting (05), and so on.

Layer ``lessons`` may import: core, methods, loop, profiles, teachers; no plotting or notebook
package. A lesson computes, ``viz`` draws; ``batch`` never imports a lesson. (The table of every
layer is ``distill_lib/layers.py``; ``tests/test_layers.py`` checks every import against it.)
"""
