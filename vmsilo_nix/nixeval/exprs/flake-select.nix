# The value at an attribute path of a flake's outputs, for nix-eval-jobs when a function must be
# applied to it first (nix-eval-jobs --flake cannot apply one). Needs --impure for local refs.
# Both arguments arrive as data (JSON), never spliced into code.
ref: path: builtins.foldl' (value: name: value.${name}) (builtins.getFlake ref) path
