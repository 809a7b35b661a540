"""Speed benchmarks of graph construction and walks; results in benchmarks/RESULTS.md."""
