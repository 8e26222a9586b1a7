"""People and rights: users with roles scoped to a unit subtree, console sessions, API tokens."""
