"""The command-line programs, one module each, with a `main(argv=None) -> int` that the console scripts of
pyproject.toml (`hstl-predict`, `hstl-score`, ...) and the thin scripts at the repository root (`predict.py`,
`eval/score.py`, ...) call. They work from any directory: nothing here depends on the working directory."""
