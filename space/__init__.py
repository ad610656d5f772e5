"""The Gradio app (UI glue only: every number and image comes from a :mod:`lib` call).

Start it with ``python -m space.app`` (127.0.0.1:7860) or ``python space/app.py`` (how a Hugging Face Space starts it).
"""
