"""Teachers for distillation: Depth Anything V2 (``depth_anything``), the synthetic stand-in
(``synthetic``) and the precompute loop that stores their maps (``precompute``)."""
