"""How data moves: the Faust app, its topics, Avro codecs, agents and tables."""
