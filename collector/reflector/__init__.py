"""The STAMP Session-Reflector: answers test packets from other sites."""
