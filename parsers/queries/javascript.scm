; Definitions in JavaScript. Written for codesearch; capture names and the set of function-valued
; bindings follow tree-sitter-javascript's queries/tags.scm (MIT), without its #strip!/#select-adjacent!
; doc captures (parsers/extract.py reads the comments above a definition from the source).
; Named function expressions are captured only through the name they are bound to.

(class_declaration
  name: (_) @name) @definition.class

(class
  name: (_) @name) @definition.class

(variable_declarator
  name: (identifier) @name
  value: (class !name)) @definition.class

(function_declaration
  name: (identifier) @name) @definition.function

(generator_function_declaration
  name: (identifier) @name) @definition.function

(class_body
  (method_definition
    name: (_) @name) @definition.method)

(class_body
  (field_definition
    property: (_) @name
    value: [(arrow_function) (function_expression) (generator_function)]) @definition.method)

(object
  (method_definition
    name: (_) @name) @definition.function)

(object
  (pair
    key: (_) @name
    value: [(arrow_function) (function_expression) (generator_function)]) @definition.function)

(variable_declarator
  name: (identifier) @name
  value: [(arrow_function) (function_expression) (generator_function)]) @definition.function

(assignment_expression
  left: [
    (identifier) @name
    (member_expression
      property: (property_identifier) @name)
  ]
  right: [(arrow_function) (function_expression) (generator_function)]) @definition.function
