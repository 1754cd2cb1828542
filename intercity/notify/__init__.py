"""Mail (and later chat) sent by the panel: account mail now, alerts and digests with the notification work."""
