"""A run's configuration, one module per job: the typed sections and ``config.json`` (:mod:`.schema`), the
named presets (:mod:`.presets`), the command-line flags (:mod:`.command_line`) and the reading of files
older versions wrote (:mod:`.migration`)."""
