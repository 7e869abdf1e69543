"""Generated sound: sound effects and music beds made from text (and audio) by a model."""
