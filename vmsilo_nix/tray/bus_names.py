"""The D-Bus names both sides of the tray use: the bus's own, and the ones the
StatusNotifierItem and DBusMenu specifications fix (any other name the host exports, it
chooses itself)."""

DBUS = "org.freedesktop.DBus"
DBUS_PATH = "/org/freedesktop/DBus"
WATCHER_NAME = "org.kde.StatusNotifierWatcher"  # its well-known name and its interface
WATCHER_PATH = "/StatusNotifierWatcher"
ITEM_IFACE = "org.kde.StatusNotifierItem"
ITEM_PATH = "/StatusNotifierItem"
MENU_IFACE = "com.canonical.dbusmenu"
#: The match rule for the bus's word that a name got or lost its owner.
NAME_OWNER_CHANGED = f"type='signal',sender='{DBUS}',interface='{DBUS}',member='NameOwnerChanged'"
