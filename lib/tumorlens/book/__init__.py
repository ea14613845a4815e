"""The book: figures, tables and words made from results files, and the Jupyter Book build.

figures  Plotly figures (render only)
tables   pandas tables (render only)
text     differences with intervals, verdicts, claims in words
build    executes the report notebooks and builds the HTML book
"""
