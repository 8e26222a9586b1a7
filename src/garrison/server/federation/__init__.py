"""Federation: a child Garrison server (a district, a department) reports to a parent server (the province).

``signing`` holds the child's Ed25519 key and the signatures of pushes; ``parent`` is the receiving side (the
children registered here, their join tokens, the pushes they send); ``child`` the pushing side (joining, the
link's files in the data directory, the push itself); ``api`` the REST endpoints of both sides.
"""
