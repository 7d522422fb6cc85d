"""Campaign results for people: the warehouse reads behind them and the `loyalty report` HTML."""
