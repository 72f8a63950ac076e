"""Pure text: how a conversation becomes the exact prompt a variant sees. No torch, no gradio."""

from playground.prompting.formats import render

__all__ = ["render"]
