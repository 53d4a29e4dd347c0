# A host without vmsilo: how many NixOS evaluations the host itself makes.
{ }
