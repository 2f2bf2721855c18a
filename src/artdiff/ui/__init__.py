"""Layer 5: the Gradio app."""
