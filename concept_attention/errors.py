"""The one exception type the pack raises for input a person can fix."""


class ConceptAttentionError(ValueError):
    """Bad input to Concept Attention: the message says what was wrong and what to do."""


# ComfyUI names a failed node's exception by `module.qualname`, or by the bare qualname for builtins. Loaded
# from a custom_nodes folder, our module name is that folder's whole file path, which fills the UI's error
# popup and cuts the message off; declared as a builtin, the popup and tracebacks read
# "ConceptAttentionError: <message>". (Nothing pickles this exception by reference.)
ConceptAttentionError.__module__ = "builtins"
