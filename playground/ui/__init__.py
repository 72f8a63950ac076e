"""The Gradio interface, thin over the services."""
