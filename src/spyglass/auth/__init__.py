"""Who is calling: API keys, their scopes, and the tenant whose collections they see."""
