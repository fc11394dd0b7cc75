"""Varied English inputs for the text operators' tests: short, long, punctuation, numbers."""

VARIED_TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "A function definition is an executable statement.",
    "Hi",
    "Exceptions are raised when an error is detected during execution; the handler may re-raise it "
    "or handle it and continue with the next statement after the try block, as described below.",
    "for loops iterate over sequences",
    "Numbers are created by numeric literals or as the result of built-in functions and operators, e.g. 3.14 or 1e10.",
    "yes",
    "The import statement combines two operations: it searches for the named module, then binds it.",
    "Comparison operators chain arbitrarily: x < y <= z is equivalent to x < y and y <= z.",
]
