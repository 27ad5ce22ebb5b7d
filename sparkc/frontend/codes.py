"""Every diagnostic code the front end (parser and checker) can report, with its meaning.

`ERROR_CODES` maps code → one-line meaning. docs/language.md prints this table; a test asserts
that every code raised in `sparkc/frontend` and in the op table's shape rules is listed here.
E01xx are syntax errors (parser), E02xx name/structure errors (checker), E03xx type, shape and
range errors (checker and the op table's rules).
"""

from __future__ import annotations

ERROR_CODES: dict[str, str] = {
    # -- E01xx: reading the file ---------------------------------------------------------------
    "E0101": "syntax error: a token that cannot appear here",
    "E0102": "the file is too large",
    "E0103": "a character that is not part of the language",
    "E0104": "an expression is nested too deeply",
    "E0105": "the file ends in the middle of a definition",
    "E0106": "the file is not valid UTF-8",
    "E0107": "the file contains NUL bytes (a binary file)",
    "E0108": "the file defines no model",
    "E0109": "an invalid number literal",
    "E0110": "an unterminated string literal",
    "E0111": "a reserved word used as a name",
    # -- E02xx: names, calls and program structure ---------------------------------------------
    "E0201": "an unknown name",
    "E0202": "an unknown dtype in an input declaration",
    "E0203": "an unknown op or block",
    "E0204": "an unknown keyword argument",
    "E0205": "a required hyperparameter is missing",
    "E0206": "a missing tensor input or too many positional arguments",
    "E0207": "a hyperparameter value of the wrong type",
    "E0208": "a value of the wrong kind (a tensor where a constant is needed, or the reverse)",
    "E0209": "an argument given twice, or a positional argument after keyword arguments",
    "E0210": "a duplicate name in one scope (binding, hyperparameter, input, output or loss)",
    "E0211": "a duplicate definition, or a block named like a built-in op",
    "E0212": "a block that calls itself, directly or through other blocks",
    "E0213": "field access on a value that has no named outputs",
    "E0214": "an unknown output field",
    "E0215": "destructuring into the wrong number of names",
    "E0216": "a multi-output value used where one tensor is needed",
    "E0217": "an invalid tie= (not an earlier embed instance, or mismatched shapes)",
    "E0218": "an invalid basis= (not a basis(...) call or none)",
    "E0219": "a model with no outputs and no losses",
    "E0220": "a loss term that is not a 0-d float tensor",
    "E0221": "an invalid repeat (count, or a block that is not one-in one-out of one type)",
    "E0222": "a block argument that does not match the block's declared input type",
    "E0223": "an override (-D) of a hyperparameter the model does not have",
    "E0224": "an override (-D) value that cannot be read",
    "E0225": "the selected model (--model) does not exist",
    "E0226": "invalid hyperparameter arithmetic (division by zero, arithmetic on names)",
    "E0227": "an invalid dimension in an input type",
    "E0228": "a statement that is not allowed here (output in a block, return in a model, ...)",
    "E0229": "'_' read as a value",
    "E0230": "a model hyperparameter with no value",
    "E0231": "the program is too large (too many op instances or blocks nested too deeply)",
    "E0232": "an operator that is not defined for its operands",
    # -- E03xx: types, shapes and ranges ---------------------------------------------------------
    "E0301": "tensor shapes that do not fit the op",
    "E0302": "a hyperparameter out of its valid range",
    "E0303": "a tensor input of the wrong dtype or rank",
    "E0304": "sizes that do not divide (heads, groups, head width)",
    "E0305": "an input that the chosen mode requires is missing",
    # -- E07xx: code generation and output -------------------------------------------------------
    "E0701": "an input name that cannot be an argument of the generated forward()",
    "E0702": "an output folder holding files sparkc did not write (or an -o path that is a file or a link)",
    "E0703": "the output folder cannot be written (permissions, a full disk, a file in the way)",
    # E071x: names the generated module reserves (sparkc/frontend/reserved.py)
    "E0710": "an output or loss name the returned ModelOutput reserves (aux_loss, a dict method, "
    "a dunder)",
    "E0711": "a model hyperparameter named like an argument of the generated constructor (impl)",
    # -- E08xx: sparkc bench ---------------------------------------------------------------------
    "E0801": "an op that --op cannot benchmark on its own",
    "E0802": "a --shape that does not bind every symbolic dimension",
    "E0803": "a --modes entry other than fwd, fwd+bwd and step",
    "E0804": "a --variants entry other than sparkc, sparkc-graph, eager, compile, compile-max and "
    "compile-graph",
}
