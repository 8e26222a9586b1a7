"""The Garrison endpoint agent: scans with the engine, removes what it finds and reports to the central server.

- :mod:`~garrison.agent.daemon`: the composition root (heartbeats, sending events, scans);
- :mod:`~garrison.agent.client`: HTTPS to the server with a pinned certificate, backoff and ``Retry-After``;
- :mod:`~garrison.agent.identity`, :mod:`~garrison.agent.settings`, :mod:`~garrison.agent.inventory`;
- :mod:`~garrison.agent.outbox`: the on-disk event queue (events are deleted only after the server acknowledged
  them; survives ``kill -9``, a full disk and a server that is away for days);
- :mod:`~garrison.agent.quarantine`: the encrypted quarantine store and the delete action.

Real-time protection, scheduled scans, policies, tasks and the updater come later. The agent uses the engine and
the protocol and never imports the server.
"""
