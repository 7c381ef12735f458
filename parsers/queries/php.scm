; Definitions in PHP. Written for codesearch; capture names follow tree-sitter-php's
; queries/tags.scm (MIT). Interfaces, traits and enums count as classes.

(function_definition
  name: (name) @name) @definition.function

(method_declaration
  name: (name) @name) @definition.method

(class_declaration
  name: (name) @name) @definition.class

(interface_declaration
  name: (name) @name) @definition.class

(trait_declaration
  name: (name) @name) @definition.class

(enum_declaration
  name: (name) @name) @definition.class
