; Definitions in Go. Written for codesearch; capture names follow tree-sitter-go's
; queries/tags.scm (MIT). Struct and interface types count as classes.

(function_declaration
  name: (identifier) @name) @definition.function

(method_declaration
  name: (field_identifier) @name) @definition.method

(type_spec
  name: (type_identifier) @name
  type: [(struct_type) (interface_type)]) @definition.class
