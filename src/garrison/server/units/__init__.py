"""The organisation tree: province → departments and district committees → units."""
