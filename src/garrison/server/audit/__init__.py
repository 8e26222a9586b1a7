"""The audit log: every change a person makes, with who, what, when and from where."""
