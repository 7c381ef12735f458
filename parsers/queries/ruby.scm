; Definitions in Ruby. Written for codesearch; capture names follow tree-sitter-ruby's
; queries/tags.scm (MIT), without its #strip!/#select-adjacent! doc captures. Modules count as
; classes; `def` is a function until parsers/extract.py finds it inside a class or module.

(method
  name: (_) @name) @definition.function

(singleton_method
  name: (_) @name) @definition.function

(class
  name: [(constant) (scope_resolution)] @name) @definition.class

(module
  name: [(constant) (scope_resolution)] @name) @definition.class
