"""codefill.engine: context → prompt → decode → post-process → cache."""
