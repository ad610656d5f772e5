"""One module per tab; each has ``build(ctx: AppContext) -> None``, called inside ``with gr.Tab(...)``."""
