-- vmsilo: clients in vmsilo's security context (the VMs' sound backends, started under
-- pw-container) may play but never record. They get no permission on any capture node, so
-- they can neither see one nor be linked to one. Installed by vmsilo's NixOS host module,
-- which defines `engine` (pipewire.sec.engine, "org.vmsilo") above this text.
local restricted = ObjectManager {
  Interest {
    type = "client",
    Constraint { "pipewire.sec.engine", "=", engine, type = "pw" },
  },
}
local sources = ObjectManager {
  Interest {
    type = "node",
    Constraint { "media.class", "matches", "Audio/Source*", type = "pw-global" },
  },
}

local function deny(client, node)
  client:update_permissions { [node["bound-id"]] = "-" }
end

restricted:connect("object-added", function(_, client)
  for node in sources:iterate() do
    deny(client, node)
  end
end)
sources:connect("object-added", function(_, node)
  for client in restricted:iterate() do
    deny(client, node)
  end
end)

restricted:activate()
sources:activate()
