"""The web monitor of a run database (``populace monitor``, issue 14): a Streamlit app that
reads runs through ``populace.webui.queries`` and steers a running run through its control
channel.

Modules:
    app: the Streamlit entry script (``streamlit run``): the run picker and the pages.
    common: the database, the selected run, and helpers shared by the pages.
    steering: sending commands to a running run and showing what became of them.
    reads: histograms and agent searches, kept a while (they scan a whole population).
    tables: a browser of any of a run's tables, a page at a time.
    runs_page, overview_page, population_page, network_page, agents_page, scenario_page,
    controls_page: one page each (Streamlit runs each file as a script, so a bare string
    in one, such as a constant's docstring, would be shown on the page: they use comments).
    social, market, economy, clinic: the scenario page's parts for each scenario.

Agent-written text (posts, memories, prompts, answers) is shown as text, never as Markdown or
HTML; pages read pages and aggregates, never a whole population.
"""
