"""What a run leaves for people to read: the report, the datasheet and their plots."""
