"""One module per tab; each has ``build(ctx: AppContext) -> TabSpec``, called inside ``with gr.Tab(...)``.

A tab imports from ``space.context`` / ``space.errors`` / ``space.evaluation``, never from another tab
(``tests/test_space_tabs.py`` checks it): what two tabs share lives in one of those modules.
"""
