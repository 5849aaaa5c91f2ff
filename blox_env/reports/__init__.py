"""Reports and plots: bench summaries, the blockwise study."""
