# The attribute at an attribute path of a Nix file, for nix-eval-jobs (which takes no attribute
# path for a file). A file that is a function is called with its defaults, as `nix eval --file`
# does. Both arguments arrive as data (JSON), never spliced into code.
file: path:
let
  v = import file;
  root = if builtins.isFunction v then v { } else v;
in
builtins.foldl' (value: name: value.${name}) root path
