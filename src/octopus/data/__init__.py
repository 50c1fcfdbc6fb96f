"""The dataset: schema and shards (`schema`), trial-and-error trees (`tree`), the collect stage (`collect`)."""
