"""The experiments behind docs/results.md, read like a paper's method section, one module per part:

- `config`:          what a comparison runs (corpora, seeds, methods, the training settings of each stage, the controls);
- `cells`:           running the cells (method, corpus, seed), their budget rounds and the compute-matched control;
- `statistics`:      the summary of the finished cells and the tests on it (bootstrap, Holm, seed-level, F-test);
- `report`:          the summary as markdown, JSON and a bar chart;
- `data_efficiency`: a corpus left out of stage 1, trained on 10-100 % of its sentences.
"""
