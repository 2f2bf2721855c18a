"""Pixel-space diffusion models: OpenAI improved/guided-diffusion checkpoints as diffusers UNet2DModel folders."""
