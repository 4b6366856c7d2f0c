// livesettings browser client
