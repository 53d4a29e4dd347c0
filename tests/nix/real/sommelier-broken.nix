# sommelier as nixpkgs has it (marked broken): our assertion, not nixpkgs' message.
{
  programs.vmsilo = {
    enable = true;
    user = "alice";
    nixosVms = [
      {
        name = "plain";
        color = "gray";
      }
      {
        name = "chat";
        color = "orange";
        waylandProxy = "sommelier";
      }
    ];
  };
}
