"""The central management server: REST API and web console over SQLite or PostgreSQL.

Built in parts (issue 3): the foundation (settings, database, migrations, errors), the organisation tree, users
and the audit log come first; agents, policies, tasks, detections and the console follow.
"""
