"""Agent sessions: the requests one coding-agent session made, as a unit of cost and control."""
