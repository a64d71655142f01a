"""Robot profiles: MjSpec builders for arms that the scene attaches to the bench."""
