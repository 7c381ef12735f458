; Definitions in Python. Written for codesearch; capture names follow tree-sitter-python's
; queries/tags.scm (MIT). Decorators stay outside the unit: we capture the bare definition.

(class_definition
  name: (identifier) @name) @definition.class

(function_definition
  name: (identifier) @name) @definition.function
