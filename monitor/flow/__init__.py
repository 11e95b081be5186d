"""Read layer of the flow graph: queries, statistics and graph shaping."""
