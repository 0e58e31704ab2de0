-- convmem schema v2: which model (and embedding view) made each stored vector, so a change of
-- embedder re-embeds exactly the rows it must and an index never mixes two models' vectors.
-- NULL: written before v2 (unknown), which is re-embedded like any other mismatch.
ALTER TABLE utterances ADD COLUMN embedding_model text;
CREATE INDEX utterances_embedding_model ON utterances (embedding_model) WHERE NOT deleted;
