"""The local stack: AWS-shaped WebSocket gateway, DynamoDB Local, S3, dev IdP.

Development and test tooling only; never part of the Lambda package.
"""
