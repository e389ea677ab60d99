"""patchgate: find out-of-date mail servers in message-trace logs and walk them through report, throttle and block."""
