"""The one exception type the pack raises for input a person can fix."""


class ConceptAttentionError(ValueError):
    """Bad input to Concept Attention: the message says what was wrong and what to do."""
