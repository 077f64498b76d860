"""A browser of any table of a run (the scenario's and the steering tables): a page at a
time, newest rows first, filtered by conditions on its columns. Every scenario page ends
with it; a scenario without a page of its own gets only it."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from populace.webui.queries import NotFound, RunQueries, parse_condition

from .common import PAGE_SIZE, conditions_from, show_error


def browse(q: RunQueries, default: str | None = None) -> None:
    """A table picker, conditions and a page of rows."""
    names = q.tables()
    if not names:
        st.info(f"Run {q.id} has no tables to show yet.")
        return
    index = names.index(default) if default in names else 0
    cols = st.columns([1, 2, 1])
    table = cols[0].selectbox("Table", names, index=index, key=f"tables_name_{q.id}")
    text = cols[1].text_area("Conditions on its columns, one a line (e.g. step>=3)",
                             key=f"tables_where_{q.id}", height=80)
    page_no = cols[2].number_input("Page", min_value=1, value=1, step=1, key="tables_page")
    try:
        rows = q.rows(str(table), [parse_condition(c) for c in conditions_from(text)],
                      offset=(int(page_no) - 1) * PAGE_SIZE, limit=PAGE_SIZE)
    except (ValueError, NotFound) as err:
        show_error(err)
        return
    if rows["rows"]:
        st.dataframe(pd.DataFrame(rows["rows"], columns=rows["columns"]), hide_index=True)
    else:
        st.info("No rows.")


__all__ = ["browse"]
